from extvisor.cli.main import main

main()
