from bgeimg.cli import main

main()
