"""Reading and writing frames and videos with PyAV."""
