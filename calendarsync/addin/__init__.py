"""The Outlook add-in: its manifest, task pane and JSON API (users steer their own bookings)."""
