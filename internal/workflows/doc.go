// Package workflows holds the test that lints every GitHub Actions workflow
// of the repository (.github/workflows/*.yml) with actionlint, so a broken
// pipeline fails `make test` instead of the next push.
package workflows
