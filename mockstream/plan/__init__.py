"""Plan: what is said. The scenario schema (`schema`, one validator for files and knobs), which scenario
answers (`matching`), where the text comes from (`content`), when each token is due (`timing`), and the
Plan itself (`plan`): a concrete, deterministic answer that dialects spell and delivery sends."""

from __future__ import annotations

from .plan import Ask, Choice, Delivery, Plan, ToolCall, Usage, make_plan, request_seed

__all__ = ["Ask", "Choice", "Delivery", "Plan", "ToolCall", "Usage", "make_plan", "request_seed"]
