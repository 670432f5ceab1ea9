"""LangGraph workflows: generation, the generator-reviewer feedback loop, rationale writing."""
