"""Running devices on one event loop: the engine of a worker."""
