"""Exchange on-premises over EWS (exchangelib): impersonation, window reads, push notifications."""
