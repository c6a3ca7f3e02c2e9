from opelab.cli import main

main()
