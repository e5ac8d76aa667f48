from ember_node.agent import main

main()
