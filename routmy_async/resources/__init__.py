"""The API's resources: thin layers that build a request, send it and decode the answer."""
