"""The shared HTTP edge: credentials from headers, client IP, problem details, access log."""
