from dlrun.cli import command

command()
