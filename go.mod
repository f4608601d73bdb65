module github.com/basefs/basefs

go 1.26.8

require github.com/klauspost/compress v1.20.3

require (
	github.com/spf13/pflag v1.1.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/term v0.47.0 // indirect
)
