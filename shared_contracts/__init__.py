"""What crosses the wire between the CRM and the chat inbox: event types, payloads,
creator flags and the Standard Webhooks signature scheme. Both services import this
package; it imports neither of them."""
