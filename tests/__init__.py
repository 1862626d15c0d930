"""minillm's test suite (a package, so that tests can ``from tests.gradcheck import gradcheck``)."""
