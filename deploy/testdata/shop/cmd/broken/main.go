// Command broken does not compile: the local target must show why.
package main

func main() {
	undefinedFunction()
}
