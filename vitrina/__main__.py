from vitrina.cli import main

main()
