# Two push streams (local.streams): migration-events and snapshot-cleanup.
# Each topic pushes to its path of the service with an OIDC token, retries
# with backoff, and after max_delivery_attempts moves the message to a
# dead-letter topic, where a pull subscription keeps it for an operator.

resource "google_pubsub_topic" "stream" {
  for_each = local.streams

  project = var.project_id
  name    = each.value.topic
  labels  = local.labels

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  for_each = local.streams

  project                    = var.project_id
  name                       = "${each.value.topic}-dead-letter"
  labels                     = local.labels
  message_retention_duration = "${var.dead_letter_retention_seconds}s"

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_subscription" "push" {
  for_each = local.streams

  project              = var.project_id
  name                 = "${each.value.topic}-push"
  topic                = google_pubsub_topic.stream[each.key].id
  labels               = local.labels
  ack_deadline_seconds = var.ack_deadline_seconds

  push_config {
    push_endpoint = "${local.service_url}${each.value.path}"
    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = local.auth_audience
    }
  }

  retry_policy {
    minimum_backoff = "${var.retry_minimum_backoff_seconds}s"
    maximum_backoff = "${var.retry_maximum_backoff_seconds}s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.key].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  # Never expire for inactivity: a quiet month must not delete it.
  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_pubsub_topic_iam_member.dead_letter_publisher,
    google_service_account_iam_member.pubsub_agent_mints_push_tokens,
    google_cloud_run_v2_service_iam_member.push_invoker,
  ]
}

# Dead-lettered messages stay here until an operator pulls them.
resource "google_pubsub_subscription" "dead_letter" {
  for_each = local.streams

  project                    = var.project_id
  name                       = "${each.value.topic}-dead-letter"
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  labels                     = local.labels
  ack_deadline_seconds       = 60
  message_retention_duration = "${var.dead_letter_retention_seconds}s"

  expiration_policy {
    ttl = ""
  }
}

# Forwarding to a dead-letter topic is done by the Pub/Sub service agent: it
# publishes to the dead-letter topic and acknowledges on the source
# subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.streams

  project = var.project_id
  topic   = google_pubsub_topic.dead_letter[each.key].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${local.pubsub_service_agent}"

  depends_on = [google_project_service_identity.pubsub]
}

resource "google_pubsub_subscription_iam_member" "push_subscriber" {
  for_each = local.streams

  project      = var.project_id
  subscription = google_pubsub_subscription.push[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${local.pubsub_service_agent}"

  depends_on = [google_project_service_identity.pubsub]
}
