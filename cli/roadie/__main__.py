from roadie.main import main

main()
