from scenekit.cli import main

main()
