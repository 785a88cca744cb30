"""Infrastructure every layer uses: config paths, errors, atomic writes, hardware and precision, progress, records."""
