// FIQueue: the Redis Streams queue protocol and its backends (issue 3).
