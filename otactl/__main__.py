from otactl.cli import main

main()
