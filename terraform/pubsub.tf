# Two push streams (local.streams): migration-events and snapshot-cleanup.
# Each topic pushes to its path of the service with an OIDC token, retries
# with backoff, and after max_delivery_attempts moves the message to a
# dead-letter topic, where a pull subscription keeps it for an operator.
#
# snapshot-cleanup has one push subscription per managed project, filtered
# on the message's project attribute (bus.ProjectFilter), and a catch-all
# for messages without the attribute (bus.UnroutedFilter: published before
# it existed, or by an older revision during a rollout). Pub/Sub's push flow
# control is per subscription: with one subscription, a project whose
# Compute quota is spent, and whose deliveries are answered 503 until the
# next minute, shrank the push window of every project (docs/cleanup.md,
# "Pacing"). A cleanup message of a project without a subscription (one the
# service does not allow: the scheduler publishes only for allowlisted
# projects) reaches none; its record stays cleanup_pending and the sweep
# re-drives it after sweep_stuck_after, or fails it as not allowed.

locals {
  # Every push subscription: its stream, name and filter (null: none).
  push_subscriptions = merge(
    {
      events = {
        stream = "events"
        name   = "${var.events_topic_name}-push"
        filter = null
      }
      cleanup-unrouted = {
        stream = "cleanup"
        name   = "${var.cleanup_topic_name}-push-unrouted"
        filter = "NOT attributes:project"
      }
    },
    {
      for p in local.managed_projects : "cleanup-${p}" => {
        stream = "cleanup"
        name   = "${var.cleanup_topic_name}-push-${p}"
        filter = "attributes.project = \"${p}\""
      }
    },
  )
}

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
  for_each = local.push_subscriptions

  project              = var.project_id
  name                 = each.value.name
  topic                = google_pubsub_topic.stream[each.value.stream].id
  labels               = local.labels
  ack_deadline_seconds = var.ack_deadline_seconds
  # Set at creation only: a changed filter replaces the subscription.
  filter = each.value.filter

  push_config {
    push_endpoint = "${local.service_url}${local.streams[each.value.stream].path}"
    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = local.auth_audience
    }
  }

  retry_policy {
    minimum_backoff = "${var.retry_minimum_backoff_seconds}s"
    maximum_backoff = "${var.retry_maximum_backoff_seconds}s"
  }

  # One dead-letter topic per stream: a dead-lettered cleanup message keeps
  # its project attribute, and Pub/Sub adds the source subscription
  # (CloudPubSubDeadLetterSourceSubscription).
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.value.stream].id
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

# The service agent acknowledges a forwarded message on its source
# subscription: every push subscription needs the grant.
resource "google_pubsub_subscription_iam_member" "push_subscriber" {
  for_each = local.push_subscriptions

  project      = var.project_id
  subscription = google_pubsub_subscription.push[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${local.pubsub_service_agent}"

  depends_on = [google_project_service_identity.pubsub]
}
