from grambot.cli import main

main()
