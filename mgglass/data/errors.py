"""One exception type for every bad input, so CLIs can print it as one line and exit non-zero."""


class GlassDataError(ValueError):
    """A structure file or its content cannot be used. The message names the file and the problem."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
