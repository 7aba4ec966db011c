"""The defect-nas command line."""
