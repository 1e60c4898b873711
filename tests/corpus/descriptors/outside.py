plugin = None  # outside every plugin folder
