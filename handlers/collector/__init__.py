"""The Segment-compatible collector: API Gateway puts each request body on the stream (a service integration,
no code in the data path); the only code is the authorizer that checks the write key."""
