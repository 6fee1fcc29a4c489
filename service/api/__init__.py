"""HTTP layer: dependencies, schemas, errors, middleware and one router per resource."""
