"""Data shapes and rules every layer uses: settings, platform specs, the renders tree,
errors, the exports root's layout, atomic files."""
