module github.com/flk-project/flk/sdk/go

go 1.25.0

require github.com/twmb/franz-go v1.21.7 // indirect
