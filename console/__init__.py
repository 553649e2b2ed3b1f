"""The model review console: versions, their evidence and a prediction form in one web page."""
