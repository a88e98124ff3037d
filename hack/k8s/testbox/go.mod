module ferrum.dev/k8s-testbox

go 1.24.0
