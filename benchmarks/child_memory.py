"""The peak RSS of a benchmark's child process (``python -c CHILD``): the source each
CHILD starts with. Not ``ru_maxrss``: Linux keeps it across ``exec``, so a child would
report at least its parent's peak at the moment it was started."""

PEAK_RSS = """
def peak_rss():  # bytes: this process's own high-water mark
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))
"""
