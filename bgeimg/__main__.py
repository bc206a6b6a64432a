from bgeimg.cli.app import main

main()
