"""One router per resource. Routes only speak HTTP: they parse the request, call the query and
service layer (services/api/store) with the caller's company, announce a change and commit, and
present the result. No route module imports another; what two of them share lives in the layer
or in services/api/schemas.py."""
