from soak.cli import main

main()
