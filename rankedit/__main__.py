from rankedit.cli.main import main

main()
