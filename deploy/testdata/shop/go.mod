module example.com/testshop

go 1.26
