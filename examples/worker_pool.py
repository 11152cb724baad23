"""A worker pool: N asyncio workers on a queue, sharing one client (and one connection pool)."""

import asyncio

from _mock_env import model, routmy_client

from routmy_async import AsyncRoutmy, RoutmyError

WORKERS = 8


async def worker(
    name: int, client: AsyncRoutmy, jobs: asyncio.Queue[str], results: dict[str, str]
) -> None:
    while True:
        prompt = await jobs.get()
        try:
            completion = await client.chat.completions.create(
                model=model(), messages=[{"role": "user", "content": prompt}]
            )
            results[prompt] = completion.choices[0].message.content or ""
        except RoutmyError as error:  # one failed job must not stop the worker
            results[prompt] = f"failed: {error}"
        finally:
            jobs.task_done()


async def main() -> None:
    jobs: asyncio.Queue[str] = asyncio.Queue()
    for number in range(50):
        jobs.put_nowait(f"job {number}")
    results: dict[str, str] = {}
    async with routmy_client(max_connections=WORKERS) as client:
        workers = [asyncio.create_task(worker(n, client, jobs, results)) for n in range(WORKERS)]
        await jobs.join()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    print(f"{len(results)} jobs done by {WORKERS} workers; job 0 -> {results['job 0']!r}")


if __name__ == "__main__":
    asyncio.run(main())
