module github.com/dockca/dockca

go 1.26.8
