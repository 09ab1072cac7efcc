# The registry's Firestore database, the composite index of every query
# shape of more than one field (store.QueryShapes in store/shapes.go: the
# emulator never asks for them, production fails without them), and TTL
# policies on the audit-only collections (store.TTLCollections).
# terraform/terraform_test.go keeps this file and store/shapes.go in step.

resource "google_firestore_database" "registry" {
  count = var.create_firestore_database ? 1 : 0

  project                 = var.project_id
  name                    = var.firestore_database
  location_id             = local.firestore_location
  type                    = "FIRESTORE_NATIVE"
  delete_protection_state = var.firestore_delete_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  # terraform destroy leaves the data alone.
  deletion_policy = "ABANDON"

  depends_on = [google_project_service.apis]
}

# Shape task-snapshots-by-state.
resource "google_firestore_index" "task_snapshots_by_state" {
  project    = var.project_id
  database   = var.firestore_database
  collection = "snapshots"

  fields {
    field_path = "sessionId"
    order      = "ASCENDING"
  }
  fields {
    field_path = "taskId"
    order      = "ASCENDING"
  }
  fields {
    field_path = "state"
    order      = "ASCENDING"
  }

  depends_on = [google_firestore_database.registry]
}

# Shape session-snapshots-by-state.
resource "google_firestore_index" "session_snapshots_by_state" {
  project    = var.project_id
  database   = var.firestore_database
  collection = "snapshots"

  fields {
    field_path = "sessionId"
    order      = "ASCENDING"
  }
  fields {
    field_path = "state"
    order      = "ASCENDING"
  }

  depends_on = [google_firestore_database.registry]
}

# Shape snapshots-by-state-expiry.
resource "google_firestore_index" "snapshots_by_state_expiry" {
  project    = var.project_id
  database   = var.firestore_database
  collection = "snapshots"

  fields {
    field_path = "state"
    order      = "ASCENDING"
  }
  fields {
    field_path = "expiresAt"
    order      = "ASCENDING"
  }

  depends_on = [google_firestore_database.registry]
}

# Shape snapshots-by-state-updated.
resource "google_firestore_index" "snapshots_by_state_updated" {
  project    = var.project_id
  database   = var.firestore_database
  collection = "snapshots"

  fields {
    field_path = "state"
    order      = "ASCENDING"
  }
  fields {
    field_path = "updatedAt"
    order      = "ASCENDING"
  }

  depends_on = [google_firestore_database.registry]
}

# Shape snapshots-by-state-created.
resource "google_firestore_index" "snapshots_by_state_created" {
  project    = var.project_id
  database   = var.firestore_database
  collection = "snapshots"

  fields {
    field_path = "state"
    order      = "ASCENDING"
  }
  fields {
    field_path = "createdAt"
    order      = "ASCENDING"
  }

  depends_on = [google_firestore_database.registry]
}

# Shape session-snapshots-by-created.
resource "google_firestore_index" "session_snapshots_by_created" {
  project    = var.project_id
  database   = var.firestore_database
  collection = "snapshots"

  fields {
    field_path = "sessionId"
    order      = "ASCENDING"
  }
  fields {
    field_path = "createdAt"
    order      = "ASCENDING"
  }

  depends_on = [google_firestore_database.registry]
}

# Shape task-snapshots-by-created.
resource "google_firestore_index" "task_snapshots_by_created" {
  project    = var.project_id
  database   = var.firestore_database
  collection = "snapshots"

  fields {
    field_path = "sessionId"
    order      = "ASCENDING"
  }
  fields {
    field_path = "taskId"
    order      = "ASCENDING"
  }
  fields {
    field_path = "createdAt"
    order      = "ASCENDING"
  }

  depends_on = [google_firestore_database.registry]
}

# Shape session-tasks-by-state.
resource "google_firestore_index" "session_tasks_by_state" {
  project    = var.project_id
  database   = var.firestore_database
  collection = "tasks"

  fields {
    field_path = "sessionId"
    order      = "ASCENDING"
  }
  fields {
    field_path = "state"
    order      = "ASCENDING"
  }

  depends_on = [google_firestore_database.registry]
}

# TTL policies: Firestore deletes documents some time (typically within a
# day) after their expireAt. The field is not indexed: a TTL timestamp field
# is write-heavy and never queried.

resource "google_firestore_field" "rejected_ttl" {
  project    = var.project_id
  database   = var.firestore_database
  collection = "rejected"
  field      = "expireAt"

  ttl_config {}
  index_config {}

  depends_on = [google_firestore_database.registry]
}

resource "google_firestore_field" "processed_events_ttl" {
  project    = var.project_id
  database   = var.firestore_database
  collection = "processed_events"
  field      = "expireAt"

  ttl_config {}
  index_config {}

  depends_on = [google_firestore_database.registry]
}

resource "google_firestore_field" "health_reports_ttl" {
  project    = var.project_id
  database   = var.firestore_database
  collection = "health_reports"
  field      = "expireAt"

  ttl_config {}
  index_config {}

  depends_on = [google_firestore_database.registry]
}
