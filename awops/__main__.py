from awops.cli import main

main()
