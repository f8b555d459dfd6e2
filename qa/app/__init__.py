"""The front ends on top of the public API: the `qa` command line and the Gradio web chat."""
