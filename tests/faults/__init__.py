"""The fault-injection suite (`make faults`; a fast subset runs in `make test`)."""
