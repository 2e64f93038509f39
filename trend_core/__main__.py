from trend_core.cli import run

run()
