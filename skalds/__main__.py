from skalds.cli import main

main()
