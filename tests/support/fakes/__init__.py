"""In-memory servers that follow a dialect's specification (the dialects
no real server is installable for here), served with
tests.support.runs.serving."""
