from rankedit.cli import main

main()
