module snapsentry/tests/controlplane/pause

go 1.26.0
