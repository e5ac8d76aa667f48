from ember_node.main import main

main()
