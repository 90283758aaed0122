"""What the book and the notebooks show: chapter parameters, tables beside the paper's, the book build. Nothing in the library imports it."""
