from robusteval.cli import app

app()
