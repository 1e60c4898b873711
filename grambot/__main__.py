from grambot.cli import main

main(prog_name="grambot")
